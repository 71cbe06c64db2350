"""fedledger.data"""
