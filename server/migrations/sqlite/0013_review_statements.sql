-- A statement review covers every statement of the batch it holds, each with its bound parameter
-- values, as the reviewer saw them (masking detectors applied; never raw values): a JSON array of
-- {text, params, note}. NULL for reviews filed before, whose `statement` column is all they show.
ALTER TABLE reviews ADD COLUMN statements_json TEXT;
