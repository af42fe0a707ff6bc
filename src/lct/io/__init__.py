"""Loading: checkpoints (lct.io.checkpoint), weights-only checkpoint files (lct.io.ckpt_file), run records
(lct.io.records) and the report over them (lct.io.report)."""
