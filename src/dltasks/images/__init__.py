"""Images: the project image (a generated Dockerfile tagged by the hash of its inputs), framework
images, base images made with no registry, and images copied between hosts.

- :mod:`~dltasks.images.dockerfile`: the Dockerfile, its build context and content hash (pure).
- :mod:`~dltasks.images.build`: make sure the project image exists; build framework images.
- :mod:`~dltasks.images.base`: ``base-image`` (debootstrap + import).
- :mod:`~dltasks.images.copy`: an image from one host's engine to another's, through this machine.
- :mod:`~dltasks.images.progress`: build output as live steps on a terminal, plain lines elsewhere.
"""
