"""Branches that name their EdgePort and worker (routr_ray/edge/peers.py) and the EdgePort tags (util/edge_tag.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routr_ray.edge.peers import BranchOwner, owned_branch, owner_of_branch
from routr_ray.edge.workers import worker_branch, worker_of_branch
from routr_ray.util.edge_tag import edge_tag, is_edge_tag


def test_a_tag_is_stable_short_and_never_the_ref() -> None:
    assert edge_tag("edgeport-01") == edge_tag("edgeport-01")
    assert edge_tag("edgeport-01") != edge_tag("edgeport-02")
    assert is_edge_tag(edge_tag("edge port; with>odd<chars"))
    assert "edgeport" not in edge_tag("edgeport-01")
    assert not is_edge_tag("edgeport") and not is_edge_tag("ABCDEF12") and not is_edge_tag("abcdef1")


def test_owned_branches_name_edgeport_and_worker() -> None:
    tag = edge_tag("edgeport-02")
    branch = owned_branch(tag, 3)
    assert branch.startswith("z9hG4bK")
    assert owner_of_branch(branch) == BranchOwner(tag, 3)
    assert worker_of_branch(branch) == 3  # what a worker-only reader sees
    assert owned_branch(tag, 3) != branch  # the rest is random (RFC 3261 §8.1.1.7)


def test_other_branches_name_no_edgeport() -> None:
    assert owner_of_branch(worker_branch(2)) == BranchOwner(None, 2)
    assert owner_of_branch("z9hG4bKclient1") is None
    assert owner_of_branch("z9hG4bKrw1.nothex!!.x") == BranchOwner(None, 1)
    assert owner_of_branch("z9hG4bKrwx.abcdef12.x") is None
    assert owner_of_branch(None) is None


def test_the_launcher_refuses_two_edgeports_whose_tags_collide(tmp_path: Path) -> None:
    from routr_ray.actors.launcher import RunOptions, StartupError, load

    assert edge_tag("e37291") == edge_tag("e91537")  # found by a birthday search over e0, e1, ...
    for ref, port in (("e37291", 5060), ("e91537", 6060)):
        (tmp_path / f"{ref}.yaml").write_text(
            f"apiVersion: v2beta1\nkind: EdgePort\nref: {ref}\nspec:\n  transport: [{{protocol: udp, port: {port}}}]\n")
    with pytest.raises(StartupError, match="same tag"):
        load(RunOptions(tmp_path))
