"""The report as one static HTML page, its style sheet inline, so that it
opens from disk without a server."""

import html
import os
from typing import Dict, List

from pipeline.report import document as doc

_STYLE_SHEET = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "style.css")


def _e(text) -> str:
  return html.escape(str(text), quote=True)


def _table(table: doc.Table) -> str:
  attrs = ""
  if table.table_id:
    attrs += f' id="{_e(table.table_id)}"'
  if table.css:
    attrs += f' class="{_e(table.css)}"'
  head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
  body = []
  for i, row in enumerate(table.rows):
    key = table.row_keys[i] if i < len(table.row_keys) else ""
    cells = []
    for cell in row:
      css = " ".join(c for c in ("num" if cell.numeric else "", cell.css) if c)
      cell_attrs = (f' class="{_e(css)}"' if css else "") + (
          f' title="{_e(cell.title)}"' if cell.title else "")
      cells.append(f"<td{cell_attrs}>{_e(cell.text)}</td>")
    row_attr = f' data-key="{_e(key)}"' if key else ""
    body.append(f"<tr{row_attr}>{''.join(cells)}</tr>")
  return (f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead>'
          f"<tbody>{''.join(body)}</tbody></table></div>")


def _figures(block: doc.Figures) -> str:
  parts = []
  for fig in block.items:
    width = f' width="{fig.width}"' if fig.width else ""
    parts.append(f'<figure class="{_e(fig.kind)}"><img src="{_e(fig.src)}" '
                 f'alt="{_e(fig.alt)}"{width}><figcaption>'
                 f"{_e(fig.caption)}</figcaption></figure>")
  return '<div class="figures">' + "".join(parts) + "</div>"


def _gallery(block: doc.Gallery) -> str:
  cards = []
  for card in block.cards:
    if card.overlay:
      inner = (
          '<div class="pair">'
          f'<img class="original" src="{_e(card.original)}" '
          f'alt="{_e(card.file_name)}, original">'
          f'<img class="overlay" src="{_e(card.overlay)}" '
          f'alt="{_e(card.file_name)}, Grad-CAM">'
          "</div>"
          f"<p>{_e(card.file_name)} · true {_e(card.class_name)} · "
          f"p({_e(card.class_name)}) = {card.probability:.3f}</p>")
    else:
      inner = f'<p class="missing">{_e(card.note)}</p>'
    cards.append(f'<div class="card" data-class="{_e(card.class_name)}">'
                 f"<h5>{_e(card.class_name)}</h5>{inner}</div>")
  return (f'<div class="gallery" id="gradcam-{_e(block.model)}">'
          + "".join(cards) + "</div>")


def block(item) -> str:
  """One block (and the blocks inside it) as HTML."""
  if isinstance(item, doc.Heading):
    anchor = f' id="{_e(item.anchor)}"' if item.anchor else ""
    return f"<h{item.level}{anchor}>{_e(item.text)}</h{item.level}>"
  if isinstance(item, doc.Para):
    css = f' class="{_e(item.css)}"' if item.css else ""
    return f"<p{css}>{_e(item.text)}</p>"
  if isinstance(item, doc.BulletList):
    css = f' class="{_e(item.css)}"' if item.css else ""
    return f"<ul{css}>" + "".join(
        f"<li>{_e(i)}</li>" for i in item.items) + "</ul>"
  if isinstance(item, doc.Table):
    return _table(item)
  if isinstance(item, doc.Figures):
    return _figures(item)
  if isinstance(item, doc.Gallery):
    return _gallery(item)
  if isinstance(item, doc.Details):
    return (f"<details><summary>{_e(item.summary)}</summary>"
            + "".join(block(b) for b in item.blocks) + "</details>")
  if isinstance(item, doc.Section):
    return (f'<section class="task" id="section-{_e(item.anchor)}">'
            + "\n".join(block(b) for b in item.blocks) + "</section>")
  raise TypeError(f"unknown block {type(item).__name__}")


def page(title: str, output_dir: str, generated: str,
         sections: List[doc.Section], section_titles: Dict[str, str],
         notes: List[str], footer: str) -> str:
  """The whole page: header with a link per section, notes, sections and
  footer. section_titles: the link text by section anchor."""
  with open(_STYLE_SHEET, encoding="utf-8") as f:
    css = f.read()
  nav = " ".join(f'<a href="#{_e(s.anchor)}">'
                 f"{_e(section_titles.get(s.anchor, s.anchor))}</a>"
                 for s in sections)
  note_html = "".join(f'<p class="note skipped">{_e(n)}</p>' for n in notes)
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
{css}</style>
</head>
<body>
<header class="page">
<h1>{_e(title)}</h1>
<p>Output folder {_e(output_dir)} · generated {_e(generated)}</p>
<nav>{nav}</nav>
</header>
<main>
{note_html}
{"".join(block(s) for s in sections)}
</main>
<footer>{_e(footer)}</footer>
</body>
</html>
"""
