"""The no-code deployment spec (`service/deployment.yaml`) and what is made from it.

`spec` holds the validated spec; `docker`, `kubernetes` and `azureml` turn it into a local
container, Kubernetes manifests and Azure ML deployments. Only `spec` is imported eagerly: the
others pull in their (optional) dependencies inside their functions.
"""

from diabetes_deploy.spec import DeploymentSpec, SpecError, load_spec

__all__ = ["DeploymentSpec", "SpecError", "load_spec"]
