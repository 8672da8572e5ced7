"""lowbit.quantize.rules"""
