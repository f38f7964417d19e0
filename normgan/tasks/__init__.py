"""Tasks: what differs between unconditional (z -> image), paired (x -> y) and class-conditional
((z, y) -> image) synthesis.

``info`` declares each task without torch (config validation, metric names, eval defaults, report
labels); ``builtin`` holds the runtime contract (:class:`~normgan.tasks.builtin.Task`) and the
built-in tasks. This package imports nothing, so ``normgan.tasks.info`` stays light."""
