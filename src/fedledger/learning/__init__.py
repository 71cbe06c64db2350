"""fedledger.learning"""
