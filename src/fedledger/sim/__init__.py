"""fedledger.sim"""
