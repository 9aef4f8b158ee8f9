DROP TABLE IF EXISTS concord_cdc_watermark;
DROP TABLE IF EXISTS concord_cdc_tables;
