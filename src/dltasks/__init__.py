"""dltasks: deep-learning work in Docker containers on NVIDIA GPUs, one command at a time.

The package is a typed core (settings, paths, images, containers, host setup, remote hosts)
with a thin Invoke/Fabric task layer on top (``dltasks.tasks``). Importing this package is
cheap on purpose: listing tasks must not import docker, fabric or paramiko.
"""

__version__ = "0.1.0"
