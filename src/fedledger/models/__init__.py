"""fedledger.models"""
