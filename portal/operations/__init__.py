"""The Operations page for support leads: queues, workers, failed jobs and their retry, the schedule
and Sage's limiters."""
