"""File paths as the operator wrote them: absolute, but with their symbolic links kept.

Kubernetes mounts a ConfigMap or Secret as symbolic links (`policy.yaml -> ..data/policy.yaml`,
`..data -> ..2026_12_03_15_04_05.123`) and replaces the timestamped folder on every update.
A path resolved once (`Path.resolve()`) points into the old folder, which the kubelet deletes:
the sidecar would then read a file that no longer exists and never see the update. Every path
the sidecar re-reads (config, policy and bulk files, Connect secret files) is therefore kept
as written, made absolute and normalised lexically, and followed anew at each read.
"""

from __future__ import annotations

import os
from pathlib import Path


def as_mounted(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute and normalised (`.`/`..` removed) without following links."""
    return Path(os.path.abspath(path))
