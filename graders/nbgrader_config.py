"""nbgrader configuration of the course rooted at the repository: source = solutions/, release = exercises/;
submissions, graded copies, feedback and the gradebook live under graders/ (git-ignored).

Run nbgrader from the repository root with `--config graders/nbgrader_config.py`, or let `course grade` build
a throw-away course (the recommended path). Shared settings come from `course.grading.release.configure`.
"""

import os

from course.grading.release import configure

c = get_config()  # noqa: F821
configure(c, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "graders/submitted"
c.CourseDirectory.autograded_directory = "graders/autograded"
c.CourseDirectory.feedback_directory = "graders/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "graders", "gradebook.db")
