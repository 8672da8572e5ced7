"""lowbit.quantize.floats"""
