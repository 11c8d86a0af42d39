"""``pantau-provision``: the technician's tool from a blank SD card to a trusted gateway.

Modules, by what they hold: ``gateways`` (what a gateway is: id, site, location),
``state`` (every gateway provisioned so far), ``passwords`` and ``acl`` (mosquitto's
formats), ``ca`` (client and server certificates), ``bundle`` (one gateway's files),
``provision`` (one or many gateways, all or nothing), ``brokerconf`` (the broker's
passwd/acl/mosquitto.conf), ``central`` (central's HTTP API), ``mbr`` and ``fat``
(partitions and files in an image without mounting), ``flash``, ``seed``, ``label``,
``batch``, ``verify``, ``cli``.

Exceptions (``provisioning.errors``)::

    ProvisionError
    ├── CentralError
    ├── RefusedError
    └── InputError (.problems)
"""

from provisioning.errors import CentralError, InputError, ProvisionError, RefusedError

__all__ = ["CentralError", "InputError", "ProvisionError", "RefusedError"]
