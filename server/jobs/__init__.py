"""The scheduler process: the leader lock (leader.py), the job functions (jobs.py) and the loop that
runs them on APScheduler (scheduler.py). Started only by `flask --app wsgi scheduler`, never by
create_app or a web worker. See docs/scheduler-and-mail.md.
"""
