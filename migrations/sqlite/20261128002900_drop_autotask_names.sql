-- The Autotask name cache was written by nothing and read by nothing (the names are looked up
-- when shown); dropped so the schema holds only what the code keeps.
DROP TABLE IF EXISTS autotask_names;
