"""Copied as `sitecustomize.py` onto PYTHONPATH: no connection leaves loopback, and every attempt is recorded.

For a process that would talk to Azure (an Azure ML workspace cannot be reached from here): name
resolution and connections to anything but loopback fail at once, as a machine without network
would, after the destination is written to $NETWORK_GUARD_LOG; every HTTP request made with
`requests` (azure-core, msal and MLflow all use it) is recorded first, with its method and URL and
whether it carried an Authorization header (never its value). With $NETWORK_GUARD_WORKSPACE_URI
set, azureml-core's `Workspace.from_config` reads the config file and answers that tracking URI
instead of logging in.
"""

import ipaddress
import json
import os
import socket

_LOG = os.environ["NETWORK_GUARD_LOG"]


def _record(entry):
    with open(_LOG, "a") as out:
        out.write(json.dumps(entry) + "\n")


def _loopback(host):
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if not _loopback(name):
        _record({"resolve": name})
        raise socket.gaierror(socket.EAI_NONAME, f"network guard: {name} is not on loopback")
    return _getaddrinfo(host, *args, **kwargs)


_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        _record({"connect": address[0]})
        raise ConnectionRefusedError(f"network guard: {address[0]} is not on loopback")
    return _connect(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect

try:
    import requests.adapters

    _send = requests.adapters.HTTPAdapter.send

    def _recorded_send(self, request, *args, **kwargs):
        _record({"method": request.method, "url": request.url, "authorized": "Authorization" in request.headers})
        return _send(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = _recorded_send
except ImportError:
    pass

if os.environ.get("NETWORK_GUARD_WORKSPACE_URI"):
    from pathlib import Path

    import azureml.core

    class _Workspace:
        def __init__(self, config):
            self.name = config["workspace_name"]

        def get_mlflow_tracking_uri(self):
            return os.environ["NETWORK_GUARD_WORKSPACE_URI"]

    def _from_config(path=None, **kwargs):
        _record({"workspace_from_config": str(path)})
        return _Workspace(json.loads(Path(path).read_text()))

    azureml.core.Workspace.from_config = staticmethod(_from_config)
