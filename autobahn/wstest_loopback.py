# -*- coding: utf-8 -*-
"""Run wstest with every listening socket bound to 127.0.0.1 only.

Python 2.7; run it with the wstest venv's python, using the same arguments as
wstest itself:

    .venv/bin/python wstest_loopback.py -m fuzzingserver -s fuzzingserver.json -u 0

Stock `wstest -m fuzzingserver` calls reactor.listenTCP(port, factory,
backlog, interface='') for its WebSocket listener (autobahn's listenWS) and
for the report web page (`-u`, default 8080), i.e. it binds all interfaces.
This wrapper replaces the reactor's listenTCP/listenSSL with versions that
force interface='127.0.0.1' (override with WSTEST_BIND_INTERFACE), then hands
over to wstest's own entry point.
"""
import os
import sys

# Must come first: installs the reactor exactly like wstest does
# (wstest.py's first import is `choosereactor`).
import autobahntestsuite.choosereactor  # noqa: F401
from twisted.internet import reactor

INTERFACE = os.environ.get("WSTEST_BIND_INTERFACE", "127.0.0.1")


def _force_interface(name):
    orig = getattr(reactor, name)

    def wrapper(port, factory, *args, **kwargs):
        # listenTCP(port, factory, backlog=50, interface='')
        # listenSSL(port, factory, contextFactory, backlog=50, interface='')
        nfixed = 2 if name == "listenTCP" else 3
        args = list(args)
        if len(args) >= nfixed:  # interface passed positionally: drop it
            args = args[:nfixed - 1]
        kwargs["interface"] = INTERFACE
        listener = orig(port, factory, *args, **kwargs)
        sys.stdout.write("[wstest_loopback] %s bound %s:%s\n"
                         % (name, INTERFACE, listener.getHost().port))
        sys.stdout.flush()
        return listener

    setattr(reactor, name, wrapper)


_force_interface("listenTCP")
_force_interface("listenSSL")

from autobahntestsuite import wstest  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
