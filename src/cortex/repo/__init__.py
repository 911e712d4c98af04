"""Reading repositories: what a repository declares (manifests, Dockerfiles, Kubernetes objects, workflows) and
which traits it has. The catalog's discovery and the toolset both read repositories through this package only."""

from cortex.repo.manifests import Declared, ManifestProblem, Package, declared_packages, manifest_readers
from cortex.repo.ownership import CODEOWNERS_PLACES, Ownership, ownership
from cortex.repo.parsers import (
    LANGUAGES,
    K8sObject,
    WorkflowLines,
    docker_images,
    is_dockerfile,
    k8s_objects,
    kubernetes_services,
    languages,
    load_workflow,
    workflow_files,
    workflow_lines,
)
from cortex.repo.targets import discover_targets, traits

__all__ = [
    "CODEOWNERS_PLACES",
    "LANGUAGES",
    "Ownership",
    "ownership",
    "Declared",
    "K8sObject",
    "ManifestProblem",
    "Package",
    "declared_packages",
    "manifest_readers",
    "discover_targets",
    "docker_images",
    "is_dockerfile",
    "k8s_objects",
    "kubernetes_services",
    "languages",
    "load_workflow",
    "traits",
    "WorkflowLines",
    "workflow_files",
    "workflow_lines",
]
