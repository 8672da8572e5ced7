"""lowbit.quantize"""
