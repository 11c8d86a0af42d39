// Reads {"check": [Flux scripts], "decode": [Flux expressions]} as JSON on stdin and
// prints {"check": [...], "decode": [...]}: for each script, true when Flux's own
// checker (flux-lsp-browser's Flux.is_valid: parse, then the semantic check of types
// and builtin function signatures) accepts it, else false; for each expression, the
// value Flux's parser reads when it is one string literal, else null.
// Run: node --experimental-wasm-modules --no-warnings validate.mjs < request.json
// The package is built for bundlers (ESM that imports its .wasm) and ships without
// "type": "module": its two files are copied into a temporary ESM folder to load them.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "node_modules", "@influxdata", "flux-lsp-browser");
const dir = mkdtempSync(join(tmpdir(), "pantau-fluxcheck-"));
try {
  for (const name of ["flux-lsp-browser_bg.js", "flux-lsp-browser_bg.wasm"]) {
    copyFileSync(join(pkg, name), join(dir, name));
  }
  writeFileSync(join(dir, "package.json"), '{"type": "module"}');
  const { Flux, parse } = await import(
    pathToFileURL(join(dir, "flux-lsp-browser_bg.js")).href
  );
  const request = JSON.parse(readFileSync(0, "utf8"));
  const check = (request.check || []).map((script) => {
    const flux = new Flux(script);
    try {
      return flux.is_valid();
    } finally {
      flux.free();
    }
  });
  const decode = (request.decode || []).map((expression) => {
    const body = parse(`x = ${expression}`).body || [];
    const init = body.length === 1 ? body[0].init : null;
    return init && init.type === "StringLiteral" ? init.value : null;
  });
  process.stdout.write(JSON.stringify({ check, decode }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
