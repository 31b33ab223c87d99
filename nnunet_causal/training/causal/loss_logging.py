"""Per-epoch logging of the causal terms (L_causal, L_contrast, L_LAD) and the gate.

nnU-Net logs only the total training loss. This mixin averages the extra values that ``train_step``
returns (keys ``l_causal``, ``l_contrast``, ``l_lad``, ``l_consistency``, ``seg_loss``) over the epoch, prints them to the
training log, stores them in nnU-Net's logger (saved in every checkpoint, so ``--c`` keeps the history) and
draws ``progress_causal.png`` beside ``progress.png``, so a run shows whether the terms did anything.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LOGGED = ("seg_loss", "l_causal", "l_contrast", "l_lad", "l_consistency", "gate")


class CausalLossLogging:
    def _local_log(self) -> dict:
        """nnU-Net's per-epoch value lists (``LocalLogger`` inside the ``MetaLogger`` of nnU-Net >= 2.8)."""
        local = getattr(self.logger, "local_logger", self.logger)
        return local.my_fantastic_logging

    def _log_value(self, key: str, value: float) -> None:
        for extra in getattr(self.logger, "loggers", ()):  # e.g. Weights & Biases when enabled
            extra.log(key, value, self.current_epoch)
        log = self._local_log()
        series = log.setdefault(key, [])
        while len(series) < self.current_epoch:      # a run resumed from a checkpoint without this key
            series.append(math.nan)
        if len(series) == self.current_epoch:
            series.append(value)
        else:
            series[self.current_epoch] = value

    def on_train_epoch_end(self, train_outputs):
        means = {}
        for key in LOGGED[:-1]:
            vals = [float(np.mean(o[key])) for o in train_outputs if key in o]
            if vals:
                means[key] = float(np.mean(vals))
        means["gate"] = float(getattr(self, "_gate", 1.0))
        super().on_train_epoch_end(train_outputs)
        for key, v in means.items():
            self._log_value(key, v)
        self.print_to_log_file("causal terms: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.local_rank == 0:
            self._plot_causal_terms()

    def _plot_causal_terms(self) -> None:
        import matplotlib

        matplotlib.use("agg")
        from matplotlib import pyplot as plt

        log = self._local_log()
        keys = [k for k in LOGGED if log.get(k)]
        if not keys:
            return
        fig, ax = plt.subplots(figsize=(8, 4))
        for k in keys:
            ax.plot(range(len(log[k])), log[k], label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel("value")
        ax.legend(loc="upper right")
        ax.set_title("causal terms per epoch")
        fig.tight_layout()
        out = Path(self.output_folder) / "progress_causal.png"
        tmp = out.with_name(".progress_causal.tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(out)
