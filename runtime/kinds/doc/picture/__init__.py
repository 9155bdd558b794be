"""A picture of a doc job's change: each changed sheet's region and each changed Word page,
before and after, drawn by LibreOffice in a sandbox with the changed cells highlighted.

Modules, each importing only the ones before it: raster (PPM in, PNG out, colours counted),
marking (the highlighted copies), soffice (the sandboxed drawing), render (what is pictured,
captions and notes). This package only re-exports.
"""

from runtime.kinds.doc.picture.marking import COLOURS, rgb
from runtime.kinds.doc.picture.render import MAX_PICTURES, Picture, Pictures, render_pictures
from runtime.kinds.doc.picture.soffice import missing

__all__ = ["COLOURS", "MAX_PICTURES", "Picture", "Pictures", "missing", "render_pictures", "rgb"]
