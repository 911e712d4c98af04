"""Reading repositories: what a repository declares (manifests, Dockerfiles, Kubernetes objects, workflows) and
which traits it has. The catalog's discovery and the toolset both read repositories through this package only."""

from cortex.repo.parsers import (
    LANGUAGES,
    K8sObject,
    Package,
    docker_images,
    is_dockerfile,
    k8s_objects,
    kubernetes_services,
    languages,
    load_workflow,
    node_packages,
    python_packages,
    workflow_files,
)
from cortex.repo.targets import discover_targets, traits

__all__ = [
    "LANGUAGES",
    "K8sObject",
    "Package",
    "discover_targets",
    "docker_images",
    "is_dockerfile",
    "k8s_objects",
    "kubernetes_services",
    "languages",
    "load_workflow",
    "node_packages",
    "python_packages",
    "traits",
    "workflow_files",
]
