"""The Polish translation is complete: every term Odoo exports for this module (fields, views,
selections, messages in the code) has a Polish translation in ``i18n/pl.po``, with the same
placeholders, and the ``.pot`` lists every term."""

import os
import re

import polib

from odoo.tests import TransactionCase, tagged
from odoo.tools.translate import TranslationModuleReader

PLACEHOLDERS = re.compile(r"%\(\w+\)[sd]|%[sd]|%%")
I18N = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "i18n")


def _po_terms(path):
    return {entry.msgid: entry.msgstr for entry in polib.pofile(path) if not entry.obsolete}


@tagged("post_install", "-at_install")
class TestTranslation(TransactionCase):

    def _exported_terms(self):
        reader = TranslationModuleReader(self.env.cr, modules=["l10n_pl_infakt"])
        return {source for _module, _type, _name, _res_id, source, _value, _comments in reader
                if source and source.strip()}

    def test_every_term_has_its_polish_translation(self):
        polish = _po_terms(os.path.join(I18N, "pl.po"))
        missing = sorted(term for term in self._exported_terms() if not polish.get(term))
        self.assertFalse(missing, "Terms without a Polish translation in i18n/pl.po:\n"
                         + "\n".join(term[:100] for term in missing))

    def test_polish_translations_keep_the_placeholders(self):
        wrong = [source[:80] for source, value in _po_terms(os.path.join(I18N, "pl.po")).items()
                 if value and sorted(PLACEHOLDERS.findall(source))
                 != sorted(PLACEHOLDERS.findall(value))]
        self.assertFalse(wrong, f"Placeholders differ in: {wrong}")

    def test_the_template_lists_every_term(self):
        template = _po_terms(os.path.join(I18N, "l10n_pl_infakt.pot"))
        missing = sorted(term for term in self._exported_terms() if term not in template)
        self.assertFalse(missing, "Terms missing from i18n/l10n_pl_infakt.pot (export it again):\n"
                         + "\n".join(term[:100] for term in missing))
