"""lowbit.quantize.int8"""
