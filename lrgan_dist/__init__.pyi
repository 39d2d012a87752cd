# Types of the lazily resolved public API (lrgan_dist/__init__.py resolves them on first use).
from lrgan_dist.analysis.loaders import load_directions as load_directions
from lrgan_dist.analysis.loaders import load_transfer as load_transfer
from lrgan_dist.analysis.loaders import open_store as open_store
from lrgan_dist.api import submit as submit
from lrgan_dist.api import validate as validate
from lrgan_dist.apply.export import export_reference as export_reference
from lrgan_dist.spec import JobSpec as JobSpec
from lrgan_dist.spec import SpecError as SpecError
from lrgan_dist.spec import load_spec as load_spec

__version__: str
__all__: list[str]
