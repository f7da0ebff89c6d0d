"""JupyterLab inside a garden's environment image: the publisher's edit loop.

`prefix.ensure` installs JupyterLab once per Python version, on the host, into the step
cache (``jupyter/<key>/``): it is mounted read-only into the container and never becomes
part of the garden's image or lock. `session.Lab` builds (or reuses) the garden's
environment image, starts JupyterLab in it with the garden folder mounted read-write,
bound to 127.0.0.1 with a token, and on exit says what changed in the Gardenfile and
whether the next build resolves again. `kernel_pip` is the kernel's ``%pip``.
"""

#: JupyterLab's port on 127.0.0.1 unless --port says otherwise (here, so the CLI's parser
#: need not import the session module to show it).
DEFAULT_PORT = 8888
