"""host:port: how every address is written, on a command line, in a request or in the Raft
configuration."""

PORT_MAX = 65535


def split_host_port(text: str) -> tuple[str, int]:
    """(host, port) of "host:port"; ValueError unless the host is non-empty and the port is a
    number from 1 to 65535. The last colon splits, so an IPv6 host may keep its brackets."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= PORT_MAX:
        raise ValueError(f"not a host:port address: {text!r}")
    return host, int(port)
