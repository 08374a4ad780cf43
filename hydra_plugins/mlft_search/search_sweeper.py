"""`hydra/sweeper=optuna` (configs/hydra/sweeper/optuna.yaml): Hydra's sweeper interface around mlft.search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mlft import search


class SearchSweeper(Sweeper):
    def __init__(self, sampler: Any, params: Any = None, **keys: Any) -> None:
        sampler = OmegaConf.to_container(sampler) if isinstance(sampler, DictConfig) else dict(sampler or {})
        self.settings = search.Settings(sampler=sampler.get("name", "tpe"), seed=sampler.get("seed"), **keys)
        params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params
        self.params = [f"{key}={value}" for key, value in (params or {}).items()]

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        config, launcher = self.config, self.launcher
        assert config is not None and launcher is not None  # setup() ran
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        search.run_search(
            self.settings,
            [*self.params, *arguments],
            lambda jobs, first: launcher.launch(jobs, initial_job_idx=first),
            sweep_dir,
        )
