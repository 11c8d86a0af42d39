"""The one exception tree of ``provisioning``.

::

    ProvisionError          anything the technician must fix; the message says what
    ├── CentralError        central's API refused or could not be reached
    ├── RefusedError        a safety check said no (mounted device, system disk, no consent)
    └── InputError          bad input; ``problems`` lists each one ("file:line: column x: ...")
"""


class ProvisionError(Exception):
    """A problem the technician can act on; the message never holds a secret."""


class CentralError(ProvisionError):
    pass


class RefusedError(ProvisionError):
    pass


class InputError(ProvisionError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
