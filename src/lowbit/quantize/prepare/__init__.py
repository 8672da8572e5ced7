"""lowbit.quantize.prepare"""
