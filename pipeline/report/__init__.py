"""`cxr report OUT`: the thesis's results chapter as a static web page.

Writes OUT/report/index.html (open it from disk, no server), OUT/report/
report.md with the same tables, and the pictures both link to under
OUT/report/images/. Everything is read back through the run summary
(pipeline.summary), the Evaluator's TFMA output, the Trainer's history and
curves, and each model's own `gradcam` serving signature:

  * results on the own test split per model (thesis Table 2),
  * cost: training and evaluation seconds, device (Table 3),
  * results on the --cross-data set, when the run had one (Table 4),
  * per model: confusion matrix, training curves, metrics per slice and a
    Grad-CAM gallery of one correctly classified test image per class.

The modules: document (the blocks and how values are written), sections
(the tables and sections of a run summary), figures (confusion matrix,
training curves), gallery (Grad-CAM), html and markdown (the renderers,
style.css the page's style sheet) and build (build_report). The command is
cxr/commands/report.py.
"""

from pipeline.report.build import build_report
from pipeline.report.build import INDEX_FILE
from pipeline.report.build import MARKDOWN_FILE
from pipeline.report.figures import confusion_matrix
from pipeline.report.gallery import GRADCAM_SCAN_LIMIT
from schema.layout import REPORT_DIR

__all__ = ["build_report", "confusion_matrix",
           "GRADCAM_SCAN_LIMIT", "INDEX_FILE", "MARKDOWN_FILE", "REPORT_DIR"]
