"""maillab: a terminal email testing lab that receives test mail and judges it as a receiving filter would."""

__version__ = "0.1.0"
