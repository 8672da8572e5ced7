"""lowbit.quantize.mixed"""
