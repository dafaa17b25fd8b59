class DataApiClient:
    def __init__(self, *a, **k): pass
    async def connect(self): pass
