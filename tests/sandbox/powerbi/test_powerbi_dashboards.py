"""The Power BI sandbox's dashboards: tiles listed with their dataset, cloned onto another
dataset with `Clone Tile`, and deleted with the dataset they show (Power BI's rule)."""

from __future__ import annotations

from typing import Any

from .conftest import Client, simple_dataset


def _dashboard_with_tile(client: Client, dataset_id: str) -> tuple[str, dict[str, Any]]:
    dashboard = client.control("POST", "/_sandbox/dashboards", json={"name": "Daily"}).json()
    pinned = client.control(
        "POST",
        f"/_sandbox/dashboards/{dashboard['id']}/tiles",
        json={"title": "Revenue", "datasetId": dataset_id},
    )
    assert pinned.status_code == 201, pinned.text
    return str(dashboard["id"]), pinned.json()


def test_tiles_are_listed_with_their_dataset(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    dashboard_id, tile = _dashboard_with_tile(client, dataset_id)
    dashboards = client.request("GET", "/dashboards").json()["value"]
    assert {"id": dashboard_id, "displayName": "Daily", "isReadOnly": False} in dashboards
    (listed,) = client.request("GET", f"/dashboards/{dashboard_id}/tiles").json()["value"]
    assert listed["id"] == tile["id"] and listed["datasetId"] == dataset_id


def test_a_clone_with_target_model_id_shows_the_other_dataset(client: Client) -> None:
    old = client.create_ok(simple_dataset())
    new = client.create_ok(simple_dataset())
    dashboard_id, tile = _dashboard_with_tile(client, old)
    response = client.request(
        "POST",
        f"/dashboards/{dashboard_id}/tiles/{tile['id']}/Clone",
        json={"targetDashboardId": dashboard_id, "targetModelId": new},
    )
    assert response.status_code == 200, response.text
    assert response.json()["datasetId"] == new and response.json()["title"] == "Revenue"
    tiles = client.request("GET", f"/dashboards/{dashboard_id}/tiles").json()["value"]
    assert [t["datasetId"] for t in tiles] == [old, new]  # the copy at the tail


def test_deleting_a_dataset_deletes_the_tiles_that_show_it(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    dashboard_id, _ = _dashboard_with_tile(client, dataset_id)
    assert client.request("DELETE", f"/datasets/{dataset_id}").status_code == 200
    assert client.request("GET", f"/dashboards/{dashboard_id}/tiles").json()["value"] == []


def test_a_clone_request_without_its_target_dashboard_is_refused(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    dashboard_id, tile = _dashboard_with_tile(client, dataset_id)
    response = client.request(
        "POST", f"/dashboards/{dashboard_id}/tiles/{tile['id']}/Clone", json={}
    )
    assert response.status_code == 400
    assert client.request("GET", "/dashboards/nope/tiles").status_code == 404
