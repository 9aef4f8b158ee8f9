-- Undoes 0001_portfolio.sql: the sync's conflicts and cursors, then the portfolio
-- transactions (their indexes go with them).
DROP TABLE IF EXISTS concord_sync_conflicts;
DROP TABLE IF EXISTS concord_sync_cursors;
DROP TABLE IF EXISTS portfolio_transactions;
