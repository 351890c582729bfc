"""Names of the DiagnosticStatus entries the nodes publish on /diagnostics.

``<owner>: <what>`` as ROS 2's diagnostic_updater names them (``<node name>:
<task>``), with the node's namespace in front when it has one: two robots'
nodes share a node name in different namespaces, and diagnostic_aggregator
and rqt_robot_monitor key statuses by name, so ``robot1/...`` and ``robot2/...``
must differ (the hardware_id alone does not keep them apart). A node in the
root namespace keeps the plain name.
"""
from __future__ import annotations


def status_name(namespace: str, owner: str, what: str) -> str:
    """``owner: what``, prefixed with ``namespace`` (without its leading '/') when the node is in one."""
    ns = namespace.strip("/")
    return f"{ns + '/' if ns else ''}{owner}: {what}"
