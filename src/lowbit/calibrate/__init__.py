"""lowbit.calibrate"""
