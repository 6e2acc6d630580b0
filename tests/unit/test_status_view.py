"""`routr-ray status` as one operator view of a cluster (issue 17 item 4): nodes with their labels, where each
EdgePort runs with its flows and placement, replicas and shards per node, and the data plane's services."""

from __future__ import annotations

from routr_ray.actors.status import (
    ClusterStatus,
    DeploymentStatus,
    EdgePortStatus,
    LinkServiceStatus,
    LocationApiStatus,
    NodeStatus,
    ShardStatus,
    format_status,
)


def cluster() -> ClusterStatus:
    nodes = (NodeStatus("aaaa1111bbbb", "10.0.0.1", True, True, {}, 2.0),
             NodeStatus("cccc2222dddd", "10.0.0.2", True, False, {"routr-edge": "a"}, 2.0),
             NodeStatus("eeee3333ffff", "10.0.0.3", False, False, {"routr-edge": "b"}, 2.0))
    edges = (
        EdgePortStatus("edgeport-edgeport-01", True, (("udp", "0.0.0.0", 5060),), 8080, node_id="cccc2222dddd",
                       node_ip="10.0.0.2", flows=3, transactions=7, placement="routr-edge=a",
                       links={"processor-connect": 2, "edgeport@59b099eb#0": 1}),
        EdgePortStatus("edgeport-edgeport-02", True, (("tcp", "0.0.0.0", 6060),), 8081, node_id="aaaa1111bbbb",
                       node_ip="10.0.0.1", placement="routr-edge=b", restarted=True),
    )
    return ClusterStatus(
        edgeports=edges,
        shards=(ShardStatus("location-shard-0", True, 4, 2, True, node_id="aaaa1111bbbb", node_ip="10.0.0.1"),),
        location_api=LocationApiStatus(True, 51902),
        applications={"routr": "RUNNING"},
        deployments=(DeploymentStatus("routr", "processor-connect", "HEALTHY", {"RUNNING": 2},
                                      {"10.0.0.1": 1, "10.0.0.2": 1}),),
        nodes=nodes,
        links=(LinkServiceStatus("processor-connect", (("10.0.0.1", 40001), ("10.0.0.2", 40002))),),
    )


def test_nodes_edgeports_replicas_shards_and_links_in_one_view() -> None:
    status = cluster()
    text = "\n".join(format_status(status))
    assert status.healthy  # a dead node is shown, not a failure by itself: what ran there is judged
    assert "Nodes (2 alive, 1 dead):" in text
    assert "ok  aaaa1111 10.0.0.1        head, 2 CPU, no labels" in text
    assert "DEAD eeee3333 10.0.0.3" in text and "routr-edge=b" in text
    assert "on 10.0.0.2 (cccc2222, routr-edge=a); 3 flows; 7 transactions; placement: routr-edge=a" in text
    assert "links to: processor-connect (2), edgeport@59b099eb#0 (1)" in text
    assert "placement: routr-edge=b; RESTARTED by Ray" in text
    assert "on 10.0.0.1 (1), 10.0.0.2 (1)" in text
    assert "4 bindings, 2 AORs, Redis, on 10.0.0.1 (aaaa1111)" in text
    assert "processor-connect            10.0.0.1:40001, 10.0.0.2:40002" in text


def test_json_carries_the_same() -> None:
    data = cluster().as_dict()
    assert data["nodes"][1]["labels"] == {"routr-edge": "a"}
    assert data["edgeports"][0]["node_ip"] == "10.0.0.2" and data["edgeports"][0]["flows"] == 3
    assert data["deployments"][0]["nodes"] == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert list(data["links"][0]["servers"]) == [("10.0.0.1", 40001), ("10.0.0.2", 40002)]
