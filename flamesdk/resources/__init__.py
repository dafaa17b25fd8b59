"""``flamesdk.resources``: only the modules whose names analyses import (see ``flamesdk``)."""
