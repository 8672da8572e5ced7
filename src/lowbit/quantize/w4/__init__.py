"""lowbit.quantize.w4"""
