DROP TABLE IF EXISTS concord_dual_write_ops;
