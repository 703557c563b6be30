"""Training-time machinery beside the LightningModule: the stage schedule (freeze / thaw / losses per epoch)."""

from multipose.training.stages import Stage, StageSchedule, build_stage_callback, loss_enabled

__all__ = ["Stage", "StageSchedule", "build_stage_callback", "loss_enabled"]
