"""GPUs: what the user asked for, how GPUs get into a container, and who holds which on a host.

- :mod:`~dltasks.gpu.selection`: ``--gpu 0,1|all|none|auto|free:2`` parsed (pure).
- :mod:`~dltasks.gpu.modes`: the access mode (NVIDIA runtime, CDI spec, or the driver itself);
  :mod:`~dltasks.gpu.driver` and :mod:`~dltasks.gpu.cdi` find and describe the driver.
- :mod:`~dltasks.gpu.claims`: claims read from engine labels, and which GPUs a run may take (pure).
- :mod:`~dltasks.gpu.lock`: the host's one GPU lock; :mod:`~dltasks.gpu.share`: taking GPUs
  under it, or waiting for them.
- :mod:`~dltasks.gpu.report`: ``gpus``, a host's GPUs and their holders (pure rendering).
"""
