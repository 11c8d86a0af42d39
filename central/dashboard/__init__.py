"""The command center's dashboard, served by ``pantau-central run`` at ``/`` on the
API listener (FastAPI + Jinja2 templates, one small script, every asset under
``/static`` from this package: no CDN, works without internet).

Sign-in with an API token gives a signed session cookie (:mod:`.session`); read
tokens see every page, admin tokens may also acknowledge and silence incidents.
Pages read the same registry, alert store and InfluxDB as the JSON API
(:mod:`.views`, :mod:`.reads`); :mod:`.routes` serves them; :mod:`.i18n` has the
words in Indonesian and English (``dashboard.language``).
"""

from central.dashboard.routes import mount

__all__ = ["mount"]
