"""The report as Markdown: the same tables as the page, for pasting."""

from typing import List

from pipeline.report import document as doc


def _text(text) -> str:
  """Text in a table cell: a '|' or a line break would end the cell."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def _table(table: doc.Table) -> str:
  if not any(table.headers):  # key-value facts
    return "\n".join(f"* {_text(r[0].text)}: {_text(r[1].text)}"
                     for r in table.rows)
  lines = ["| " + " | ".join(_text(h) for h in table.headers) + " |",
           "|" + "|".join("---:" if any(
               len(r) > i and r[i].numeric for r in table.rows) else "---"
                          for i in range(len(table.headers))) + "|"]
  lines += ["| " + " | ".join(_text(c.text) for c in row) + " |"
            for row in table.rows]
  return "\n".join(lines)


def _gallery(gallery: doc.Gallery) -> str:
  lines = ["| class | original | Grad-CAM | file | p(class) |",
           "|---|---|---|---|---:|"]
  for card in gallery.cards:
    if card.overlay:
      lines.append(
          f"| {card.class_name} | ![original]({card.original}) | "
          f"![Grad-CAM]({card.overlay}) | {_text(card.file_name)} | "
          f"{card.probability:.3f} |")
    else:
      lines.append(f"| {card.class_name} | {_text(card.note)} | | | |")
  return "\n".join(lines)


def block(item) -> str:
  """One block (and the blocks inside it) as Markdown."""
  if isinstance(item, doc.Heading):
    return f"{'#' * item.level} {item.text}"
  if isinstance(item, doc.Para):
    return f"> {item.text}" if item.css == "note" else (
        f"**{item.text}**" if item.css.startswith("badge") else item.text)
  if isinstance(item, doc.BulletList):
    return "\n".join(f"* {i}" for i in item.items)
  if isinstance(item, doc.Table):
    return _table(item)
  if isinstance(item, doc.Figures):
    return "\n\n".join(f"![{f.alt}]({f.src})\n\n{f.caption}"
                       for f in item.items)
  if isinstance(item, doc.Gallery):
    return _gallery(item)
  if isinstance(item, doc.Details):
    return f"*{item.summary}:*\n\n" + "\n\n".join(
        block(b) for b in item.blocks)
  if isinstance(item, doc.Section):
    return "\n\n".join(block(b) for b in item.blocks)
  raise TypeError(f"unknown block {type(item).__name__}")


def document(title: str, output_dir: str, generated: str,
             sections: List[doc.Section], notes: List[str],
             footer: str) -> str:
  """The whole Markdown file: title, notes, sections and footer."""
  lines = [f"# {title}", "",
           f"Output folder {output_dir}, generated {generated}.", ""]
  lines += [f"> {n}\n" for n in notes]
  lines += [block(s) + "\n" for s in sections]
  lines += ["---", "", footer, ""]
  return "\n".join(lines)
