-- `hoop exec --review <id>` runs an approved statement review only for exactly the statement
-- that was approved. The review keeps the masked text (for people) and this salted SHA-256 of the
-- exact text (`<salt hex>:<digest hex>`), never the raw statement. Numbered 0010 so that other
-- branches' next migrations (0004...) do not collide with it.
ALTER TABLE reviews ADD COLUMN statement_digest TEXT;
