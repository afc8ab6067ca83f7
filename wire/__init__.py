"""wire: the vocabulary every layer and every client shares, and nothing else.

`wire.errors` holds the wire's error codes, the Error value and AspenError; `wire.limits` the
bounds of the data model and of a frame, defined here once: storage, the sandbox, the node and
the client all take them from here (tests/structure/test_vocabulary.py checks how the others
relate to them). Beside them, what every layer does alike: `wire.address` reads
host:port, `wire.deadline` waits for a future with a deadline, `wire.lazy` lets a package name
its public classes without importing them. It imports nothing of ours and
no third-party package, so `aspen.client` and the CLI load no server code to use it. The frame
codec that carries these is aspen/protocol.py.
"""
