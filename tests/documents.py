"""Small PDF and DOCX files that tests generate: real files, made the way real tools lay them out.

`pdf_bytes` writes a PDF by hand (catalog, pages, Helvetica text drawn with Tj, a correct xref table);
a page given as None carries only an image, like a scan without OCR. `encrypt_pdf` locks one with
pypdf (RC4, which needs no optional crypto package), and `docx_bytes` uses python-docx itself.
"""

from __future__ import annotations

import io


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str | None]) -> bytes:
    """A PDF with one page per entry: its lines of text, or None for an image-only (scanned) page."""
    objects: list[bytes] = []  # object n is objects[n - 1]
    page_ids = []
    font_id, image_id = 3, 4
    objects += [
        b"",
        b"",  # catalog and page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream",
    ]
    for text in pages:
        if text is None:
            content = b"q 200 0 0 200 100 400 cm /Im1 Do Q"
        else:
            lines = [f"({_escape(line)}) Tj 0 -16 Td" for line in text.splitlines()]
            content = ("BT /F1 12 Tf 72 720 Td " + " ".join(lines) + " ET").encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>" % (content_id, font_id, image_id)
        )
        page_ids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % number for number in page_ids),
        len(page_ids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def encrypt_pdf(data: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    """The same PDF encrypted with pypdf; an empty user password opens it without asking (owner-only lock)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(heading: str, paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    """A Word document made by python-docx: a heading, paragraphs, then an optional table."""
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table):
            for cell, value in zip(row.cells, values):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
