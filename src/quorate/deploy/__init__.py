"""Deployment on many hosts: node configs, docker-compose files and
Kubernetes manifests for a cluster whose members find each other by DNS name
(``quorate deploy``). Re-exports only."""

from quorate.deploy.manifests import (
    DeploySpec,
    render_compose,
    render_kubernetes,
    render_node_configs,
)

__all__ = ["DeploySpec", "render_compose", "render_kubernetes", "render_node_configs"]
