"""Softmax stays float: its output spans orders of magnitude that 8 bits flatten."""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, register

register(OpRule(("Softmax", "LogSoftmax"), lambda node: None, OutputMode.FLOAT,
                keep_float="kept float for accuracy"))
